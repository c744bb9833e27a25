"""The domain: inventory, lifecycle actions, hypervisors, clusters, users. Handlers call these;
tests call them too, without HTTP."""
