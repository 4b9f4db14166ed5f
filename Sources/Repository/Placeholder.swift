// Repository module.
