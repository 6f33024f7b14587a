//! Watches the local Docker daemon: the served network's subnet and bridge, events, restarts.
