"""Training the cartoon-faces experts (train, recipe, augment) and the final-image stage (superres)."""
