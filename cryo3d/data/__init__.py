"""Package data: built-in particle sets (YAML files readable by :func:`cryo3d.particles.load_particles`)."""
