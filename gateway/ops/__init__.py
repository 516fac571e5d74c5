"""Operations: metrics and their HTTP endpoint, Home Assistant discovery, site provisioning (configs, broker, certificates)."""
