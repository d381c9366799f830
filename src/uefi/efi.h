/* efi.h - the few UEFI types, tables and protocols BOOTX64.EFI uses (UEFI 2.x, x86-64).
 *
 * Written from the UEFI specification for this loader alone: only the members we call are
 * named, every other function slot is an untyped pointer kept so that the offsets of the named
 * ones are right.  All firmware calls use the Microsoft x64 convention (EFIAPI), which is also
 * the default of the x86_64-uefi target; it is spelled out so the header says what it means.
 * CHAR16 strings need -fshort-wchar (L"..." literals are then UCS-2).
 */
#ifndef BAREFLOW_EFI_H
#define BAREFLOW_EFI_H

#include <stddef.h>
#include <stdint.h>

#define EFIAPI __attribute__((ms_abi))

typedef uint64_t EFI_STATUS;
typedef void *EFI_HANDLE;
typedef uint16_t CHAR16;
typedef uint64_t EFI_PHYSICAL_ADDRESS;

#define EFI_ERROR_BIT (1ull << 63)
#define EFI_SUCCESS 0ull
#define EFI_LOAD_ERROR (EFI_ERROR_BIT | 1)
#define EFI_INVALID_PARAMETER (EFI_ERROR_BIT | 2)
#define EFI_UNSUPPORTED (EFI_ERROR_BIT | 3)
#define EFI_BAD_BUFFER_SIZE (EFI_ERROR_BIT | 4)
#define EFI_BUFFER_TOO_SMALL (EFI_ERROR_BIT | 5)
#define EFI_NOT_READY (EFI_ERROR_BIT | 6)
#define EFI_DEVICE_ERROR (EFI_ERROR_BIT | 7)
#define EFI_OUT_OF_RESOURCES (EFI_ERROR_BIT | 9)
#define EFI_VOLUME_CORRUPTED (EFI_ERROR_BIT | 10)
#define EFI_NO_MEDIA (EFI_ERROR_BIT | 12)
#define EFI_NOT_FOUND (EFI_ERROR_BIT | 14)
#define EFI_ACCESS_DENIED (EFI_ERROR_BIT | 15)
#define EFI_ABORTED (EFI_ERROR_BIT | 21)

typedef struct {
    uint32_t data1;
    uint16_t data2, data3;
    uint8_t data4[8];
} EFI_GUID;

typedef struct {
    uint64_t signature;
    uint32_t revision, header_size, crc32, reserved;
} EFI_TABLE_HEADER;

/* ---- memory ---------------------------------------------------------------------------- */
typedef enum {
    AllocateAnyPages,
    AllocateMaxAddress,
    AllocateAddress,
} EFI_ALLOCATE_TYPE;

enum {
    EfiReservedMemoryType,
    EfiLoaderCode,
    EfiLoaderData,
    EfiBootServicesCode,
    EfiBootServicesData,
    EfiRuntimeServicesCode,
    EfiRuntimeServicesData,
    EfiConventionalMemory,
    EfiUnusableMemory,
    EfiACPIReclaimMemory,
    EfiACPIMemoryNVS,
    EfiMemoryMappedIO,
    EfiMemoryMappedIOPortSpace,
    EfiPalCode,
    EfiPersistentMemory,
    EfiUnacceptedMemoryType,
};

typedef struct {
    uint32_t type;
    uint32_t pad;
    EFI_PHYSICAL_ADDRESS physical_start;
    uint64_t virtual_start;
    uint64_t number_of_pages;           /* 4 KiB pages */
    uint64_t attribute;
} EFI_MEMORY_DESCRIPTOR;                /* the firmware's stride is descriptor_size, not this */

#define EFI_PAGE_SIZE 4096ull

/* ---- console ----------------------------------------------------------------------------- */
typedef struct EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL;
struct EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL {
    void *reset;
    EFI_STATUS (EFIAPI *output_string)(EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL *self, const CHAR16 *s);
    void *test_string, *query_mode, *set_mode, *set_attribute, *clear_screen;
    void *set_cursor_position, *enable_cursor, *mode;
};

/* ---- device paths (only walked, never built) -------------------------------------------- */
typedef struct {
    uint8_t type, sub_type;
    uint8_t length[2];                  /* little-endian, bytes including this header */
} EFI_DEVICE_PATH_PROTOCOL;

#define DEVICE_PATH_MESSAGING 0x03
#define DEVICE_PATH_MSG_UART 0x0E
#define DEVICE_PATH_END 0x7F

/* ---- boot services ---------------------------------------------------------------------- */
typedef struct {
    EFI_TABLE_HEADER hdr;
    void *raise_tpl, *restore_tpl;
    EFI_STATUS (EFIAPI *allocate_pages)(EFI_ALLOCATE_TYPE type, uint32_t memory_type, uint64_t pages,
                                        EFI_PHYSICAL_ADDRESS *memory);
    EFI_STATUS (EFIAPI *free_pages)(EFI_PHYSICAL_ADDRESS memory, uint64_t pages);
    EFI_STATUS (EFIAPI *get_memory_map)(uint64_t *map_size, EFI_MEMORY_DESCRIPTOR *map,
                                        uint64_t *map_key, uint64_t *descriptor_size,
                                        uint32_t *descriptor_version);
    void *allocate_pool, *free_pool;
    void *create_event, *set_timer, *wait_for_event, *signal_event, *close_event, *check_event;
    void *install_protocol_interface, *reinstall_protocol_interface;
    void *uninstall_protocol_interface;
    EFI_STATUS (EFIAPI *handle_protocol)(EFI_HANDLE handle, const EFI_GUID *protocol, void **iface);
    void *reserved;
    void *register_protocol_notify, *locate_handle, *locate_device_path;
    void *install_configuration_table;
    void *load_image, *start_image;
    EFI_STATUS (EFIAPI *exit)(EFI_HANDLE image, EFI_STATUS status, uint64_t data_size, CHAR16 *data);
    void *unload_image;
    EFI_STATUS (EFIAPI *exit_boot_services)(EFI_HANDLE image, uint64_t map_key);
    void *get_next_monotonic_count;
    EFI_STATUS (EFIAPI *stall)(uint64_t microseconds);
    EFI_STATUS (EFIAPI *set_watchdog_timer)(uint64_t timeout_s, uint64_t code, uint64_t data_size,
                                            const CHAR16 *data);
    /* connect_controller ... create_event_ex follow; not used */
} EFI_BOOT_SERVICES;

typedef struct {
    EFI_TABLE_HEADER hdr;
    void *get_time, *set_time, *get_wakeup_time, *set_wakeup_time;
    void *set_virtual_address_map, *convert_pointer;
    EFI_STATUS (EFIAPI *get_variable)(const CHAR16 *name, const EFI_GUID *vendor, uint32_t *attributes,
                                      uint64_t *data_size, void *data);
    /* get_next_variable_name ... follow; not used */
} EFI_RUNTIME_SERVICES;

typedef struct {
    EFI_TABLE_HEADER hdr;
    CHAR16 *firmware_vendor;
    uint32_t firmware_revision;
    EFI_HANDLE console_in_handle;
    void *con_in;
    EFI_HANDLE console_out_handle;
    EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL *con_out;
    EFI_HANDLE standard_error_handle;
    EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL *std_err;
    EFI_RUNTIME_SERVICES *runtime_services;
    EFI_BOOT_SERVICES *boot_services;
    uint64_t number_of_table_entries;
    void *configuration_table;
} EFI_SYSTEM_TABLE;

/* ---- configuration table (UEFI 2.10, 4.6): where the firmware publishes the ACPI RSDP ---- */
typedef struct {
    EFI_GUID vendor_guid;
    void *vendor_table;
} EFI_CONFIGURATION_TABLE;
#define EFI_ACPI_20_TABLE_GUID \
    { 0x8868E871, 0xE4F1, 0x11D3, { 0xBC, 0x22, 0x00, 0x80, 0xC7, 0x3C, 0x88, 0x81 } }
#define EFI_ACPI_10_TABLE_GUID \
    { 0xEB9D2D30, 0x2D88, 0x11D3, { 0x9A, 0x16, 0x00, 0x90, 0x27, 0x3F, 0xC1, 0x4D } }

/* ---- loaded image ---------------------------------------------------------------------- */
#define EFI_LOADED_IMAGE_PROTOCOL_GUID \
    { 0x5B1B31A1, 0x9562, 0x11D2, { 0x8E, 0x3F, 0x00, 0xA0, 0xC9, 0x69, 0x72, 0x3B } }

typedef struct {
    uint32_t revision;
    EFI_HANDLE parent_handle;
    EFI_SYSTEM_TABLE *system_table;
    EFI_HANDLE device_handle;           /* the volume this image was loaded from */
    EFI_DEVICE_PATH_PROTOCOL *file_path;
    void *reserved;
    uint32_t load_options_size;
    void *load_options;
    void *image_base;
    uint64_t image_size;
    uint32_t image_code_type, image_data_type;
    void *unload;
} EFI_LOADED_IMAGE_PROTOCOL;

/* ---- file system ------------------------------------------------------------------------- */
#define EFI_SIMPLE_FILE_SYSTEM_PROTOCOL_GUID \
    { 0x964E5B22, 0x6459, 0x11D2, { 0x8E, 0x39, 0x00, 0xA0, 0xC9, 0x69, 0x72, 0x3B } }
#define EFI_FILE_INFO_GUID \
    { 0x09576E92, 0x6D3F, 0x11D2, { 0x8E, 0x39, 0x00, 0xA0, 0xC9, 0x69, 0x72, 0x3B } }
#define EFI_GLOBAL_VARIABLE_GUID \
    { 0x8BE4DF61, 0x93CA, 0x11D2, { 0xAA, 0x0D, 0x00, 0xE0, 0x98, 0x03, 0x2B, 0x8C } }

#define EFI_FILE_MODE_READ 1ull
#define EFI_FILE_DIRECTORY 0x10ull

typedef struct EFI_FILE_PROTOCOL EFI_FILE_PROTOCOL;
struct EFI_FILE_PROTOCOL {
    uint64_t revision;
    EFI_STATUS (EFIAPI *open)(EFI_FILE_PROTOCOL *self, EFI_FILE_PROTOCOL **out, const CHAR16 *name,
                              uint64_t mode, uint64_t attributes);
    EFI_STATUS (EFIAPI *close)(EFI_FILE_PROTOCOL *self);
    void *delete_file;
    /* On a directory each call returns the next EFI_FILE_INFO; size 0 at the end. */
    EFI_STATUS (EFIAPI *read)(EFI_FILE_PROTOCOL *self, uint64_t *size, void *buffer);
    void *write, *get_position, *set_position;
    EFI_STATUS (EFIAPI *get_info)(EFI_FILE_PROTOCOL *self, const EFI_GUID *type, uint64_t *size,
                                  void *buffer);
    void *set_info, *flush;
};

typedef struct {
    uint64_t size;                      /* of this structure including the name */
    uint64_t file_size;
    uint64_t physical_size;
    uint8_t create_time[16], last_access_time[16], modification_time[16];
    uint64_t attribute;
    CHAR16 file_name[];                 /* NUL-terminated */
} EFI_FILE_INFO;

typedef struct EFI_SIMPLE_FILE_SYSTEM_PROTOCOL EFI_SIMPLE_FILE_SYSTEM_PROTOCOL;
struct EFI_SIMPLE_FILE_SYSTEM_PROTOCOL {
    uint64_t revision;
    EFI_STATUS (EFIAPI *open_volume)(EFI_SIMPLE_FILE_SYSTEM_PROTOCOL *self, EFI_FILE_PROTOCOL **root);
};

#endif
