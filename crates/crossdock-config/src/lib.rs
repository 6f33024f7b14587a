//! The agent's configuration file: schema, defaults and validation.
