// SSH module.
