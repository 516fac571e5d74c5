"""`fogline` subcommands that drive boards, models and the demo (the gateway's own commands are in fogline.gateway.commands)."""
