// The program: command line, configuration, wiring of the modules, signals.
#pragma once

namespace outpost::app {

// Runs the `outpost` command line; returns the process exit code.
int main(int argc, char** argv);

}  // namespace outpost::app
