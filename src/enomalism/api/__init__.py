"""HTTP only: parse the spec's HTTP variables, call a service, shape the spec's return keys."""
