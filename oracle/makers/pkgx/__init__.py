# Helper package for the corpus: classes defined here get TorchScript qualified names
# of the form __torch__.pkgx.mods.<Name> (see oracle/makers/make_corpus.py, interfaces_classes.pt).
