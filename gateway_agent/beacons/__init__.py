"""Beacon detection on the router: suspected command-and-control from the timing of new flows."""
