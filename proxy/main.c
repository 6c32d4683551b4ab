#include <stdio.h>
int main(void) { fprintf(stderr, "outrigger: not built yet\n"); return 3; }
