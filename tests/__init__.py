"""The test suite of resnet-blocks (a package, so its helpers import as tests.helpers)."""
