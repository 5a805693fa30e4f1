"""What to serve where: the catalog, the plan file, the hardware it is planned for, and the planner."""
