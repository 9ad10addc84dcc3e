/* ht_tape.h: what a staged loop saves at each iteration for its backward pass.
 *
 * A loop whose iterations carry a tensor that needs gradients (an RNN's hidden state) pushes
 * the values its body reads from outside (its variables: the hidden state, the loop counter)
 * at the start of every iteration; the backward pass runs the iterations again, last to
 * first, from those values. The tape grows as the loop runs: its length is known only then. */
#ifndef HT_TAPE_H
#define HT_TAPE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *data;
    size_t used, capacity; /* bytes */
} ht_tape;

/* Append `bytes` bytes from `from`; HT_OK, or HT_ERROR (with the message set) when memory
 * runs out. */
int ht_tape_push(ht_tape *t, const void *from, size_t bytes);
void ht_tape_free(ht_tape *t);

#endif
