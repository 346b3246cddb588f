/*
 * lib/vm/format/kv.c - the `key = "value"` text of .vmx files and disk
 * descriptors (grammar in kv.h). The parser walks the text with the
 * bounded cursor one line at a time; it is strict (anything outside the
 * grammar is an error, never skipped) and keeps every line in order, so
 * serialising a parsed text gives its canonical form.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core/fs.h"
#include "vm/format/kv.h"

typedef enum { ITEM_BLANK, ITEM_COMMENT, ITEM_ENTRY, ITEM_EXTENT } item_kind;

typedef struct kv_item {
    item_kind kind;
    char *key;   /* ENTRY */
    char *text;  /* ENTRY: value; COMMENT: the bytes after '#' */
    vm_kv_extent extent;
} kv_item;

/* entry_pos/extent_pos index the items by kind, so iterating entries or
 * extents in order is O(1) per step; they are rebuilt on removal. */
struct vm_kv {
    kv_item *items;
    size_t num_items;
    size_t cap;
    size_t *entry_pos;
    size_t num_entries;
    size_t *extent_pos;
    size_t num_extents;
};

/* ---- character classes -------------------------------------------------- */

static bool is_wsp(uint8_t c) { return c == ' ' || c == '\t'; }

static bool is_key_char(uint8_t c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == ':' || c == '-';
}

static bool is_control(uint8_t c) { return c < 0x20 || c == 0x7f; }


/* text_check: valid UTF-8, and no control byte but TAB (and LF, the line
 * end, when |allow_lf|). */
static vmenc_status text_check(const uint8_t *p, size_t len, bool allow_lf, bool allow_tab) {
    size_t i = 0;
    while (i < len) {
        if (is_control(p[i])) {
            VMENC_ENSURE((p[i] == '\n' && allow_lf) || (p[i] == '\t' && allow_tab), VMENC_E_BAD_ENCODING);
            i++;
            continue;
        }
        size_t n = vmenc_utf8_seq_len(p + i, len - i);
        VMENC_ENSURE(n > 0, VMENC_E_BAD_ENCODING);
        i += n;
    }
    return VMENC_OK;
}

static vmenc_status key_check(const char *key, size_t len) {
    VMENC_ENSURE(len >= 1 && len <= VM_KV_KEY_MAX, VMENC_E_PARSE);
    for (size_t i = 0; i < len; i++)
        VMENC_ENSURE(is_key_char((uint8_t)key[i]), VMENC_E_PARSE);
    return VMENC_OK;
}

static vmenc_status value_check(const char *value, size_t len) {
    VMENC_ENSURE(len <= VM_KV_VALUE_MAX, VMENC_E_TOO_LARGE);
    VMENC_GUARD(text_check((const uint8_t *)value, len, false, false));
    for (size_t i = 0; i < len; i++)
        VMENC_ENSURE(value[i] != '"' && value[i] != '\\', VMENC_E_PARSE);
    return VMENC_OK;
}

/* ---- items -------------------------------------------------------------- */

static char *dup_n(const uint8_t *p, size_t len) {
    char *s = malloc(len + 1);
    if (s != NULL) {
        if (len > 0)
            memcpy(s, p, len);
        s[len] = '\0';
    }
    return s;
}

/* free_str wipes before freeing: a kv may hold the opened secret entries
 * of encryption.data. */
static void free_str(char *s) {
    if (s != NULL) {
        sodium_memzero(s, strlen(s));
        free(s);
    }
}

static void item_free(kv_item *it) {
    free_str(it->key);
    free_str(it->text);
}

vmenc_status vm_kv_new(vm_kv **out) {
    VMENC_ENSURE_REF(out);
    vm_kv *kv = calloc(1, sizeof(*kv));
    VMENC_ENSURE(kv != NULL, VMENC_E_NOMEM);
    *out = kv;
    return VMENC_OK;
}

void vm_kv_free(vm_kv *kv) {
    if (kv == NULL)
        return;
    for (size_t i = 0; i < kv->num_items; i++)
        item_free(&kv->items[i]);
    free(kv->items);
    free(kv->entry_pos);
    free(kv->extent_pos);
    free(kv);
}

/* push appends |it| (ownership of its strings moves on success only). */
static vmenc_status push(vm_kv *kv, const kv_item *it) {
    VMENC_ENSURE(kv->num_items < VM_KV_MAX_ITEMS, VMENC_E_TOO_LARGE);
    if (kv->num_items == kv->cap) {
        size_t cap = kv->cap ? kv->cap * 2 : 16;
        if (cap > VM_KV_MAX_ITEMS)
            cap = VM_KV_MAX_ITEMS;
        kv_item *items = realloc(kv->items, cap * sizeof(*items));
        VMENC_ENSURE(items != NULL, VMENC_E_NOMEM);
        kv->items = items;
        size_t *ep = realloc(kv->entry_pos, cap * sizeof(*ep));
        VMENC_ENSURE(ep != NULL, VMENC_E_NOMEM);
        kv->entry_pos = ep;
        size_t *xp = realloc(kv->extent_pos, cap * sizeof(*xp));
        VMENC_ENSURE(xp != NULL, VMENC_E_NOMEM);
        kv->extent_pos = xp;
        kv->cap = cap;
    }
    if (it->kind == ITEM_ENTRY)
        kv->entry_pos[kv->num_entries++] = kv->num_items;
    else if (it->kind == ITEM_EXTENT)
        kv->extent_pos[kv->num_extents++] = kv->num_items;
    kv->items[kv->num_items++] = *it;
    return VMENC_OK;
}

static kv_item *find_entry(const vm_kv *kv, const char *key) {
    for (size_t i = 0; i < kv->num_items; i++)
        if (kv->items[i].kind == ITEM_ENTRY && strcmp(kv->items[i].key, key) == 0)
            return &kv->items[i];
    return NULL;
}

/* ---- line parsers --------------------------------------------------------- */

static void skip_wsp(vmenc_cbs *line) {
    uint8_t c;
    while (vmenc_cbs_peek_u8(line, &c) && is_wsp(c))
        vmenc_cbs_skip(line, 1);
}

/* take_while returns the run of bytes at the cursor for which |pred| holds. */
static void take_while(vmenc_cbs *line, bool (*pred)(uint8_t), vmenc_cbs *out) {
    size_t n = 0;
    const uint8_t *p = vmenc_cbs_data(line);
    while (n < vmenc_cbs_len(line) && pred(p[n]))
        n++;
    (void)vmenc_cbs_get_bytes(line, out, n);
}

static bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }
static bool is_upper(uint8_t c) { return c >= 'A' && c <= 'Z'; }
static bool not_quote(uint8_t c) { return c != '"'; }

/* parse_u64 reads canonical decimal (no sign, no leading zero but "0"). */
static vmenc_status parse_u64(vmenc_cbs *line, uint64_t *out) {
    vmenc_cbs digits;
    take_while(line, is_digit, &digits);
    size_t n = vmenc_cbs_len(&digits);
    const uint8_t *p = vmenc_cbs_data(&digits);
    VMENC_ENSURE(n >= 1 && n <= 20 && (p[0] != '0' || n == 1), VMENC_E_PARSE);
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t d = (uint64_t)(p[i] - '0');
        VMENC_ENSURE(v <= (UINT64_MAX - d) / 10, VMENC_E_PARSE);
        v = v * 10 + d;
    }
    *out = v;
    return VMENC_OK;
}

static bool cbs_is(const vmenc_cbs *c, const char *s) {
    size_t n = strlen(s);
    return vmenc_cbs_len(c) == n && memcmp(vmenc_cbs_data(c), s, n) == 0;
}

static bool get_char(vmenc_cbs *line, uint8_t want) {
    uint8_t c;
    return vmenc_cbs_peek_u8(line, &c) && c == want && vmenc_cbs_skip(line, 1);
}

static vmenc_status extent_check(const vm_kv_extent *e) {
    VMENC_ENSURE(strcmp(e->access, "RW") == 0 || strcmp(e->access, "RDONLY") == 0 ||
                     strcmp(e->access, "NOACCESS") == 0,
                 VMENC_E_PARSE);
    VMENC_ENSURE(strcmp(e->type, "FLAT") == 0, VMENC_E_PARSE);
    VMENC_ENSURE(memchr(e->file, '\0', sizeof(e->file)) != NULL, VMENC_E_BAD_PATH);
    return vmenc_fs_name_check(e->file);
}

/* is_extent_line: an access word, one SP and a digit. Anything else is an
 * entry (so a key may still be called "RW"). */
static bool is_extent_line(const vmenc_cbs *line) {
    vmenc_cbs c = *line, word;
    take_while(&c, is_upper, &word);
    uint8_t d;
    return (cbs_is(&word, "RW") || cbs_is(&word, "RDONLY") || cbs_is(&word, "NOACCESS")) &&
           get_char(&c, ' ') && vmenc_cbs_peek_u8(&c, &d) && is_digit(d);
}

/*   extent = access SP sectors SP type SP DQUOTE file DQUOTE [SP offset] */
static vmenc_status parse_extent(vmenc_cbs *line, kv_item *it) {
    vm_kv_extent *e = &it->extent;
    vmenc_cbs word;
    take_while(line, is_upper, &word);
    memcpy(e->access, vmenc_cbs_data(&word), vmenc_cbs_len(&word)); /* <= 8: is_extent_line */
    VMENC_ENSURE(get_char(line, ' '), VMENC_E_PARSE);
    VMENC_GUARD(parse_u64(line, &e->sectors));
    VMENC_ENSURE(get_char(line, ' '), VMENC_E_PARSE);
    take_while(line, is_upper, &word);
    VMENC_ENSURE(vmenc_cbs_len(&word) >= 1 && vmenc_cbs_len(&word) < sizeof(e->type), VMENC_E_PARSE);
    memcpy(e->type, vmenc_cbs_data(&word), vmenc_cbs_len(&word));
    VMENC_ENSURE(get_char(line, ' ') && get_char(line, '"'), VMENC_E_PARSE);
    vmenc_cbs file;
    take_while(line, not_quote, &file);
    VMENC_ENSURE(get_char(line, '"'), VMENC_E_PARSE);
    VMENC_ENSURE(vmenc_cbs_len(&file) < sizeof(e->file), VMENC_E_BAD_PATH);
    memcpy(e->file, vmenc_cbs_data(&file), vmenc_cbs_len(&file));
    if (get_char(line, ' '))
        VMENC_GUARD(parse_u64(line, &e->offset));
    VMENC_ENSURE(vmenc_cbs_len(line) == 0, VMENC_E_PARSE);
    it->kind = ITEM_EXTENT;
    return extent_check(e);
}

/*   entry = *WSP key *WSP "=" *WSP DQUOTE value DQUOTE *WSP */
static vmenc_status parse_entry(vmenc_cbs *line, kv_item *it) {
    vmenc_cbs key, value;
    skip_wsp(line);
    take_while(line, is_key_char, &key);
    VMENC_GUARD(key_check((const char *)vmenc_cbs_data(&key), vmenc_cbs_len(&key)));
    skip_wsp(line);
    VMENC_ENSURE(get_char(line, '='), VMENC_E_PARSE);
    skip_wsp(line);
    VMENC_ENSURE(get_char(line, '"'), VMENC_E_PARSE);
    take_while(line, not_quote, &value);
    VMENC_ENSURE(get_char(line, '"'), VMENC_E_PARSE);
    skip_wsp(line);
    VMENC_ENSURE(vmenc_cbs_len(line) == 0, VMENC_E_PARSE);
    VMENC_GUARD(value_check((const char *)vmenc_cbs_data(&value), vmenc_cbs_len(&value)));
    it->kind = ITEM_ENTRY;
    it->key = dup_n(vmenc_cbs_data(&key), vmenc_cbs_len(&key));
    it->text = dup_n(vmenc_cbs_data(&value), vmenc_cbs_len(&value));
    VMENC_ENSURE(it->key != NULL && it->text != NULL, VMENC_E_NOMEM);
    return VMENC_OK;
}

static vmenc_status parse_line(vmenc_cbs *line, kv_item *it) {
    vmenc_cbs rest = *line;
    skip_wsp(&rest);
    if (vmenc_cbs_len(&rest) == 0) {
        it->kind = ITEM_BLANK;
        return VMENC_OK;
    }
    if (get_char(&rest, '#')) {
        it->kind = ITEM_COMMENT;
        it->text = dup_n(vmenc_cbs_data(&rest), vmenc_cbs_len(&rest));
        return it->text != NULL ? VMENC_OK : VMENC_E_NOMEM;
    }
    if (is_extent_line(line))
        return parse_extent(line, it);
    return parse_entry(line, it);
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* check_duplicates sorts the keys: O(n log n) rather than O(n^2) so a
 * hostile file of 8192 entries costs little. */
static vmenc_status check_duplicates(const vm_kv *kv) {
    if (kv->num_entries < 2)
        return VMENC_OK;
    const char **keys = malloc(kv->num_entries * sizeof(*keys));
    VMENC_ENSURE(keys != NULL, VMENC_E_NOMEM);
    size_t n = 0;
    for (size_t i = 0; i < kv->num_items; i++)
        if (kv->items[i].kind == ITEM_ENTRY)
            keys[n++] = kv->items[i].key;
    qsort(keys, n, sizeof(*keys), cmp_str_ptr);
    vmenc_status rv = VMENC_OK;
    for (size_t i = 1; i < n && rv == VMENC_OK; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0)
            rv = VMENC_E_PARSE;
    free(keys);
    return rv;
}

static vmenc_status parse_lines(vmenc_cbs *text, vm_kv *kv) {
    while (vmenc_cbs_len(text) > 0) {
        const uint8_t *p = vmenc_cbs_data(text);
        const uint8_t *lf = memchr(p, '\n', vmenc_cbs_len(text));
        size_t line_len = lf != NULL ? (size_t)(lf - p) : vmenc_cbs_len(text);
        vmenc_cbs line;
        (void)vmenc_cbs_get_bytes(text, &line, line_len);
        if (lf != NULL)
            (void)vmenc_cbs_skip(text, 1);
        kv_item it;
        memset(&it, 0, sizeof(it));
        vmenc_status rv = parse_line(&line, &it);
        if (rv == VMENC_OK)
            rv = push(kv, &it);
        if (rv != VMENC_OK) {
            item_free(&it);
            return rv;
        }
    }
    return check_duplicates(kv);
}

vmenc_status vm_kv_parse(const uint8_t *text, size_t len, vm_kv **out) {
    VMENC_ENSURE(out != NULL && (text != NULL || len == 0), VMENC_E_INVALID_ARG);
    VMENC_ENSURE(len <= VM_KV_MAX_TEXT, VMENC_E_TOO_LARGE);
    /* Encoding first, for the whole text: CR, NUL and other control bytes
     * are refused everywhere, so no line can hide one. */
    VMENC_GUARD(text_check(text, len, true, true));
    vm_kv *kv = NULL;
    VMENC_GUARD(vm_kv_new(&kv));
    vmenc_cbs cbs;
    vmenc_cbs_init(&cbs, text, len);
    vmenc_status rv = parse_lines(&cbs, kv);
    if (rv != VMENC_OK) {
        vm_kv_free(kv);
        return rv;
    }
    *out = kv;
    return VMENC_OK;
}

/* ---- access and edits ------------------------------------------------------- */

const char *vm_kv_get(const vm_kv *kv, const char *key) {
    if (kv == NULL || key == NULL)
        return NULL;
    const kv_item *it = find_entry(kv, key);
    return it != NULL ? it->text : NULL;
}

vmenc_status vm_kv_set(vm_kv *kv, const char *key, const char *value) {
    VMENC_ENSURE(kv != NULL && key != NULL && value != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(key_check(key, strlen(key)) == VMENC_OK, VMENC_E_INVALID_ARG);
    size_t value_len = strlen(value);
    VMENC_ENSURE(value_check(value, value_len) == VMENC_OK, VMENC_E_INVALID_ARG);
    char *copy = dup_n((const uint8_t *)value, value_len);
    VMENC_ENSURE(copy != NULL, VMENC_E_NOMEM);
    kv_item *found = find_entry(kv, key);
    if (found != NULL) {
        free_str(found->text);
        found->text = copy;
        return VMENC_OK;
    }
    kv_item it = {.kind = ITEM_ENTRY, .key = dup_n((const uint8_t *)key, strlen(key)), .text = copy};
    vmenc_status rv = it.key != NULL ? push(kv, &it) : VMENC_E_NOMEM;
    if (rv != VMENC_OK)
        item_free(&it);
    return rv;
}

vmenc_status vm_kv_remove(vm_kv *kv, const char *key) {
    VMENC_ENSURE(kv != NULL && key != NULL, VMENC_E_INVALID_ARG);
    kv_item *found = find_entry(kv, key);
    VMENC_ENSURE(found != NULL, VMENC_E_NOT_FOUND);
    size_t i = (size_t)(found - kv->items);
    item_free(found);
    memmove(&kv->items[i], &kv->items[i + 1], (kv->num_items - i - 1) * sizeof(kv->items[0]));
    kv->num_items--;
    kv->num_entries = 0;
    kv->num_extents = 0;
    for (size_t j = 0; j < kv->num_items; j++) {
        if (kv->items[j].kind == ITEM_ENTRY)
            kv->entry_pos[kv->num_entries++] = j;
        else if (kv->items[j].kind == ITEM_EXTENT)
            kv->extent_pos[kv->num_extents++] = j;
    }
    return VMENC_OK;
}

size_t vm_kv_num_entries(const vm_kv *kv) { return kv != NULL ? kv->num_entries : 0; }

/* nth returns the |i|-th item of |kind| or NULL. */
static const kv_item *nth(const vm_kv *kv, item_kind kind, size_t i) {
    if (kind == ITEM_ENTRY)
        return i < kv->num_entries ? &kv->items[kv->entry_pos[i]] : NULL;
    return i < kv->num_extents ? &kv->items[kv->extent_pos[i]] : NULL;
}

void vm_kv_entry(const vm_kv *kv, size_t i, const char **out_key, const char **out_value) {
    const kv_item *it = kv != NULL ? nth(kv, ITEM_ENTRY, i) : NULL;
    if (out_key != NULL)
        *out_key = it != NULL ? it->key : NULL;
    if (out_value != NULL)
        *out_value = it != NULL ? it->text : NULL;
}

size_t vm_kv_num_extents(const vm_kv *kv) { return kv != NULL ? kv->num_extents : 0; }

const vm_kv_extent *vm_kv_get_extent(const vm_kv *kv, size_t i) {
    const kv_item *it = kv != NULL ? nth(kv, ITEM_EXTENT, i) : NULL;
    return it != NULL ? &it->extent : NULL;
}

vmenc_status vm_kv_add_extent(vm_kv *kv, const vm_kv_extent *e) {
    VMENC_ENSURE(kv != NULL && e != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(memchr(e->access, '\0', sizeof(e->access)) != NULL &&
                     memchr(e->type, '\0', sizeof(e->type)) != NULL,
                 VMENC_E_INVALID_ARG);
    vmenc_status rv = extent_check(e);
    VMENC_ENSURE(rv != VMENC_E_PARSE, VMENC_E_INVALID_ARG);
    VMENC_GUARD(rv);
    kv_item it = {.kind = ITEM_EXTENT};
    memset(&it.extent, 0, sizeof(it.extent));
    memcpy(it.extent.access, e->access, strlen(e->access));
    memcpy(it.extent.type, e->type, strlen(e->type));
    memcpy(it.extent.file, e->file, strlen(e->file));
    it.extent.sectors = e->sectors;
    it.extent.offset = e->offset;
    return push(kv, &it);
}

vmenc_status vm_kv_add_comment(vm_kv *kv, const char *text) {
    VMENC_ENSURE(kv != NULL && text != NULL, VMENC_E_INVALID_ARG);
    size_t len = strlen(text);
    VMENC_ENSURE(len <= VM_KV_VALUE_MAX, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(text_check((const uint8_t *)text, len, false, true) == VMENC_OK, VMENC_E_INVALID_ARG);
    kv_item it = {.kind = ITEM_COMMENT, .text = malloc(len + 2)};
    VMENC_ENSURE(it.text != NULL, VMENC_E_NOMEM);
    it.text[0] = ' ';
    memcpy(it.text + 1, text, len + 1);
    vmenc_status rv = push(kv, &it);
    if (rv != VMENC_OK)
        item_free(&it);
    return rv;
}

/* ---- serialiser --------------------------------------------------------------- */

static void add_str(vmenc_cbb *cbb, const char *s) { vmenc_cbb_add_bytes(cbb, (const uint8_t *)s, strlen(s)); }

static void add_u64(vmenc_cbb *cbb, uint64_t v) {
    char buf[21];
    size_t i = sizeof(buf);
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    vmenc_cbb_add_bytes(cbb, (const uint8_t *)buf + i, sizeof(buf) - i);
}

static void write_item(vmenc_cbb *cbb, const kv_item *it) {
    switch (it->kind) {
    case ITEM_BLANK:
        break;
    case ITEM_COMMENT:
        add_str(cbb, "#");
        add_str(cbb, it->text);
        break;
    case ITEM_ENTRY:
        add_str(cbb, it->key);
        add_str(cbb, " = \"");
        add_str(cbb, it->text);
        add_str(cbb, "\"");
        break;
    case ITEM_EXTENT:
        add_str(cbb, it->extent.access);
        add_str(cbb, " ");
        add_u64(cbb, it->extent.sectors);
        add_str(cbb, " ");
        add_str(cbb, it->extent.type);
        add_str(cbb, " \"");
        add_str(cbb, it->extent.file);
        add_str(cbb, "\" ");
        add_u64(cbb, it->extent.offset);
        break;
    }
    vmenc_cbb_add_u8(cbb, '\n');
}

vmenc_status vm_kv_serialize(const vm_kv *kv, uint8_t **out, size_t *out_len) {
    VMENC_ENSURE(kv != NULL && out != NULL && out_len != NULL, VMENC_E_INVALID_ARG);
    vmenc_cbb cbb;
    VMENC_GUARD(vmenc_cbb_init(&cbb, 4096));
    /* The parser's limit, so whatever is written can be read back. */
    vmenc_cbb_set_max(&cbb, VM_KV_MAX_TEXT + 1);
    for (size_t i = 0; i < kv->num_items; i++)
        write_item(&cbb, &kv->items[i]);
    vmenc_cbb_add_u8(&cbb, '\0');
    uint8_t *buf = NULL;
    size_t len = 0;
    VMENC_GUARD(vmenc_cbb_finish(&cbb, &buf, &len));
    *out = buf;
    *out_len = len - 1;
    return VMENC_OK;
}
