"""The built-in senders (reference, opportunistic) and the clients they share."""
