"""Everything that exists only so that code written against an earlier version of the
library, or against the seed notebook's API, keeps working. The library never imports it."""
