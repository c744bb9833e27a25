"""The `enomalism` command."""
