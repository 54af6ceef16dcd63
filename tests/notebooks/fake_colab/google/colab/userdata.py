"""userdata.get(key): Colab Secrets from the JSON object in $FAKE_COLAB_SECRETS."""

import json
import os


class SecretNotFoundError(Exception):
    pass


class NotebookAccessError(Exception):
    pass


def get(key):
    secrets = json.loads(os.environ.get("FAKE_COLAB_SECRETS", "{}"))
    if key not in secrets:
        raise SecretNotFoundError(key)
    return secrets[key]
