// OpenStack module.
