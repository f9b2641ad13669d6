"""The controller's use cases, one module per aggregate; controller.service.ControllerService
composes them. Transport-free: they take and return domain values (controller/domain/models.py)."""
