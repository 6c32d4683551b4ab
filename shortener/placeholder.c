typedef int shr__placeholder;
