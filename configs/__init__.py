"""Model configs (official config.json layout) and experiment configs (one Python file each,
its run command in its docstring). Installed as the package data `ovjax.configs`."""
