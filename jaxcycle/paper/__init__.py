"""The paper's study, built on the library: the 18-model study with its controls, its tables
and figures (`study`), the demo at small scale (`demo`) and the blinded reader study
(`reader_study`). The library imports nothing from here; only the command line
(`jaxcycle.cli`) reaches in, to offer these as subcommands."""
