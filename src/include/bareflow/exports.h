/* exports.h - the functions the kernel lends to modules.
 *
 * The build generates the table (build/gen/exports.c) from the libc selection: every libc
 * function some module imports, sorted by name, plus runtime helpers.  The loader resolves a
 * module's imports against it and nothing else.
 */
#ifndef BAREFLOW_EXPORTS_H
#define BAREFLOW_EXPORTS_H

struct bf_export {
    const char *name;
    void *address;
};

extern const struct bf_export bf_exports[];
extern const unsigned bf_export_count;

#endif
