#ifndef AS_ERRNAMES_H
#define AS_ERRNAMES_H

typedef struct as_errname {
    const char *name;
    int code;
} as_errname;

/* Terminated by an entry whose name is NULL. */
extern const as_errname as_errnames[];

/* The symbolic name of an errno value ("ECONNREFUSED"), or NULL if unknown. */
const char *as_errname_of(int code);

#endif
