"""Publishing an exported model folder to the Hugging Face Hub.

The token comes from Colab Secrets (`HF_TOKEN`) or the HF_TOKEN environment variable. It
is handed to `HfApi(token=...)` in memory: never printed, logged, written to a file or
put in the environment (no `huggingface_hub.login`, which writes it to disk). Repos
are created private unless asked otherwise. `huggingface_hub` is imported here, where
it is used.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

TOKEN_NAME = "HF_TOKEN"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class HubError(ValueError):
    """A bad repo id, no token, or an upload the Hub refused; the message never holds the token."""


def resolve_hf_token() -> str | None:
    """HF_TOKEN from Colab Secrets, then the environment; None when neither has one."""
    try:
        from google.colab import userdata  # only in Colab
    except ImportError:
        userdata = None
    if userdata is not None:
        errors = tuple(getattr(userdata, n) for n in ("SecretNotFoundError", "NotebookAccessError", "TimeoutException")
                       if isinstance(getattr(userdata, n, None), type))
        try:
            token = (userdata.get(TOKEN_NAME) or "").strip()
        except errors:
            token = ""
        if token:
            return token
    return os.environ.get(TOKEN_NAME, "").strip() or None


def check_repo_id(repo_id: str) -> str:
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id) or ".." in repo_id:
        raise HubError(f"push_to_hub: {repo_id!r} is not a Hub repo id; use OWNER/NAME (letters, digits, '-', '_', '.')")
    return repo_id


def push_folder(folder, repo_id: str, *, private: bool = True, token: str | None = None,
                commit_message: str = "Upload model trained with slm-notebooks") -> str:
    """Create (or reuse) the model repo `repo_id` and upload every file of `folder`.
    -> the repo's URL. HubError when there is no token or the Hub refuses."""
    check_repo_id(repo_id)
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise HubError(f"push_to_hub: {folder} holds no exported model (config.json)")
    token = token or resolve_hf_token()
    if not token:
        raise HubError("push_to_hub: no Hugging Face token; add HF_TOKEN to Colab Secrets (key icon) or set the "
                       "HF_TOKEN environment variable (a token with write access)")
    try:
        from huggingface_hub import HfApi
        from huggingface_hub.errors import HfHubHTTPError
    except ImportError as e:
        raise ImportError("publishing needs huggingface_hub: pip install huggingface_hub") from e
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model", commit_message=commit_message)
    except (HfHubHTTPError, OSError) as e:
        # the Hub's messages name the repo and the status, not the credentials; cut the token anyway
        raise HubError(f"push_to_hub {repo_id}: {type(e).__name__}: {str(e).replace(token, '***')[:300]}") from None
    return str(url)
