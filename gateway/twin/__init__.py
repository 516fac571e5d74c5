"""Device twins: desired/reported node config, validated pushes."""
