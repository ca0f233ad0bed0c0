"""Training (torch, the ``train`` extra). The inference path never imports this package."""
