"""Pipeline stages: one thin command per DVC stage (see dvc.yaml). Stages never import each other."""
