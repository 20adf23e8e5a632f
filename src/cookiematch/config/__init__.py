"""The TOML configuration: loaded, validated and compiled into domain objects at start."""
