// Layer: api. RCU-deferred free (rcu.c, include/smpalloc_rcu.h): what the rest of the allocator
// calls. Built only where liburcu's headers are (SMP_HAVE_URCU).
#ifndef SMP_RCU_H
#define SMP_RCU_H

// Fork, from the allocator's own handlers (init.c): prepare holds every thread's record (as a
// thief does, so none is half written) and the sent list; parent releases them; the child
// releases them and gives up the records of the threads it does not have.
void smp_rcu_fork_prepare(void);
void smp_rcu_fork_parent(void);
void smp_rcu_fork_child(void);

#endif
