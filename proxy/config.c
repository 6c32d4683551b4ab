/* placeholder: being written */
typedef int px__placeholder_config;
