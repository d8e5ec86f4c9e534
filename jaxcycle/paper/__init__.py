"""The paper's study, built on the library: the 18-model study with its controls, its tables
and figures (`study`), the demo at small scale (`demo`) and the blinded reader study
(`reader_study`). Nothing in the library imports from here."""
