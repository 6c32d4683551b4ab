/* json.h: placeholder */
