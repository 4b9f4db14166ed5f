// Publisher module.
