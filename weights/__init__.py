"""The checkpoints the project ships, installed as package data `dgn_cli._weights`."""
