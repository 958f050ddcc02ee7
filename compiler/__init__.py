"""amc.compiler: checkpoint -> three int8 step graphs and a manifest (a bundle); bundle + new weights -> patch blob."""
