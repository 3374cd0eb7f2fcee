"""Asset factories, one module per group."""
