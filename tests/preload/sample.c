/* A small but non-trivial C program for the smpalloc LD_PRELOAD tests: gcc (and its cc1, as,
 * collect2 and ld) compiles it with and without the allocator preloaded; the object files
 * must be identical and the programs must print the same thing. Output is deterministic. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct point {
  double x, y;
} point_t;

typedef struct item {
  char name[24];
  uint32_t key;
  int weight;
  point_t pos;
  struct item *next;
} item_t;

typedef struct table {
  item_t **buckets;
  size_t nbuckets, count;
} table_t;

static uint32_t rng_state = 2463534242u;

static uint32_t xorshift32(void) {
  uint32_t x = rng_state;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return rng_state = x;
}

static uint32_t hash_str(const char *s) {
  uint32_t h = 2166136261u;
  while (*s) h = (h ^ (uint8_t)*s++) * 16777619u;
  return h;
}

static void table_init(table_t *t, size_t nbuckets) {
  t->buckets = calloc(nbuckets, sizeof *t->buckets);
  t->nbuckets = nbuckets;
  t->count = 0;
}

static item_t *table_find(const table_t *t, const char *name) {
  for (item_t *it = t->buckets[hash_str(name) % t->nbuckets]; it; it = it->next)
    if (strcmp(it->name, name) == 0) return it;
  return NULL;
}

static void table_grow(table_t *t) {
  size_t n = t->nbuckets * 2;
  item_t **b = calloc(n, sizeof *b);
  for (size_t i = 0; i < t->nbuckets; i++) {
    item_t *it = t->buckets[i];
    while (it) {
      item_t *next = it->next;
      size_t h = it->key % n;
      it->next = b[h];
      b[h] = it;
      it = next;
    }
  }
  free(t->buckets);
  t->buckets = b;
  t->nbuckets = n;
}

static item_t *table_add(table_t *t, const char *name, int weight) {
  item_t *it = table_find(t, name);
  if (it) {
    it->weight += weight;
    return it;
  }
  if (t->count + 1 > t->nbuckets) table_grow(t);
  it = malloc(sizeof *it);
  snprintf(it->name, sizeof it->name, "%s", name);
  it->key = hash_str(name);
  it->weight = weight;
  it->pos = (point_t){(double)(it->key % 1000) / 10.0, (double)(it->key / 1000 % 1000) / 10.0};
  size_t h = it->key % t->nbuckets;
  it->next = t->buckets[h];
  t->buckets[h] = it;
  t->count++;
  return it;
}

static int by_weight_then_name(const void *a, const void *b) {
  const item_t *x = *(item_t *const *)a, *y = *(item_t *const *)b;
  if (x->weight != y->weight) return x->weight > y->weight ? -1 : 1;
  return strcmp(x->name, y->name);
}

static void table_free(table_t *t) {
  for (size_t i = 0; i < t->nbuckets; i++) {
    item_t *it = t->buckets[i];
    while (it) {
      item_t *next = it->next;
      free(it);
      it = next;
    }
  }
  free(t->buckets);
}

/* A tiny matrix kernel to give the optimiser loops to vectorise and unroll. */
static void matmul(size_t n, const double *a, const double *b, double *c) {
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < n; j++) {
      double s = 0;
      for (size_t k = 0; k < n; k++) s += a[i * n + k] * b[k * n + j];
      c[i * n + j] = s;
    }
}

static unsigned long sieve_count(unsigned limit) {
  unsigned char *composite = calloc(limit + 1, 1);
  unsigned long count = 0;
  for (unsigned i = 2; i <= limit; i++) {
    if (composite[i]) continue;
    count++;
    for (unsigned long j = (unsigned long)i * i; j <= limit; j += i) composite[j] = 1;
  }
  free(composite);
  return count;
}

int main(void) {
  static const char *const syllables[] = {"ka", "lo", "mi", "nu", "pe", "ra", "si", "to",
                                          "va", "ze", "qui", "dro"};
  table_t t;
  table_init(&t, 16);
  for (int i = 0; i < 200000; i++) {
    char name[24] = "";
    int len = 2 + (int)(xorshift32() % 3);
    for (int k = 0; k < len; k++) strcat(name, syllables[xorshift32() % 12]);
    table_add(&t, name, (int)(xorshift32() % 100));
  }
  item_t **all = malloc(t.count * sizeof *all);
  size_t n = 0;
  for (size_t i = 0; i < t.nbuckets; i++)
    for (item_t *it = t.buckets[i]; it; it = it->next) all[n++] = it;
  qsort(all, n, sizeof *all, by_weight_then_name);
  printf("distinct names: %zu (buckets %zu)\n", n, t.nbuckets);
  for (size_t i = 0; i < 8 && i < n; i++)
    printf("  %-16s weight %6d key %08x pos (%.1f, %.1f)\n", all[i]->name, all[i]->weight,
           all[i]->key, all[i]->pos.x, all[i]->pos.y);
  long long wsum = 0;
  point_t centre = {0, 0};
  for (size_t i = 0; i < n; i++) {
    wsum += all[i]->weight;
    centre.x += all[i]->pos.x;
    centre.y += all[i]->pos.y;
  }
  printf("weight sum %lld centre (%.4f, %.4f)\n", wsum, centre.x / (double)n,
         centre.y / (double)n);
  free(all);
  table_free(&t);

  size_t m = 96;
  double *a = malloc(m * m * sizeof *a), *b = malloc(m * m * sizeof *b),
         *c = malloc(m * m * sizeof *c);
  for (size_t i = 0; i < m * m; i++) {
    a[i] = (double)(i % 17) - 8.0;
    b[i] = (double)(i % 13) * 0.5;
  }
  matmul(m, a, b, c);
  double trace = 0;
  for (size_t i = 0; i < m; i++) trace += c[i * m + i];
  printf("matmul %zux%zu trace %.3f corner %.3f\n", m, m, trace, c[m * m - 1]);
  free(a);
  free(b);
  free(c);

  printf("primes below 2000000: %lu\n", sieve_count(2000000));
  return 0;
}
