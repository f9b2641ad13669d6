"""NATS adapter of the controller: broker-enforced auth (operator/account/user JWTs) and the embedded
nats-server child process."""
