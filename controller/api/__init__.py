"""The tenant API: a FastAPI face on the service layer (controller/services/tenant_scope.py),
served in the controller's process by controller/api/server.py."""
