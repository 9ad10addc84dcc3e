#include <stdlib.h>
#include <string.h>

#include "ht_core.h"
#include "ht_tape.h"

int ht_tape_push(ht_tape *t, const void *from, size_t bytes) {
    if (bytes > SIZE_MAX / 2 - t->used) {
        ht_set_error("a staged loop's saved values outgrow the address space");
        return HT_ERROR;
    }
    if (t->used + bytes > t->capacity) {
        size_t capacity = t->capacity ? t->capacity : 4096;
        while (capacity < t->used + bytes) capacity *= 2;
        char *grown = realloc(t->data, capacity);
        if (!grown) {
            ht_set_error("out of memory saving a staged loop's values for its backward pass "
                         "(%zu bytes)", capacity);
            return HT_ERROR;
        }
        t->data = grown;
        t->capacity = capacity;
    }
    memcpy(t->data + t->used, from, bytes);
    t->used += bytes;
    return HT_OK;
}

void ht_tape_free(ht_tape *t) {
    free(t->data);
    t->data = NULL;
    t->used = t->capacity = 0;
}
