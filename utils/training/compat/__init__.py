"""Everything that exists only so old code keeps working: old module paths and the seed
notebook's API, as subclasses or adapters of the core classes. The core never imports it."""
