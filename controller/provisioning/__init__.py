"""Provisioning routers over SSH: the offline agent bundle, the inventory from the store, ansible-runner
driving playbooks/, per-host results kept with each run."""
