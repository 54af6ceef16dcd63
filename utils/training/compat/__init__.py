"""Code that exists only so older code keeps working: the seed notebook's API
(transformer-builder-colab-templates) as subclasses and adapters of the core classes, and
the map of old module paths. The core never imports this package.

docs/seed_api.md lists the seed's module paths served here and the seed behaviours
deliberately not copied."""
