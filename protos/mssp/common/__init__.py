"""Code the controller and the agent share (names, validators, text hygiene). Kept apart from the
generated wire code in `mssp.v1`; it depends on nothing heavier than protobuf and cryptography so the
agent install stays lean."""
