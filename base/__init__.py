"""The base layer: configuration, errors and the data contract. Imports no other part of the project."""
