// Workers module.
