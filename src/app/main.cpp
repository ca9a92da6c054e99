#include "app/app.hpp"

int main(int argc, char** argv) { return outpost::app::main(argc, argv); }
