"""Transactions: a durable job queue in the database, runner threads, progress, cancellation,
machine locks and recovery of jobs interrupted by a crash."""
