/* placeholder */
#include "cq_tool.h"
int cq_cmd_sweep(int argc, char **argv) { (void)argc; (void)argv; return 2; }
