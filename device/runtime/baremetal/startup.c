/* Minimal Cortex-M startup for the QEMU mps2 boards: vector table, copy .data, enable the FPU,
 * then newlib's _start (rdimon: semihosting argv, stdio and exit reach the host). */
#include <stdint.h>

extern uint32_t __data_load, __data_start, __data_end, __stack_top;
extern void _start(void);
void amc_reset(void);
static void amc_fault(void);

__attribute__((section(".isr_vector"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(uintptr_t)&__stack_top, amc_reset, amc_fault, amc_fault, amc_fault,
    amc_fault, amc_fault, 0, 0, 0, 0, amc_fault, amc_fault, 0, amc_fault, amc_fault};

static void amc_fault(void)
{
    /* semihosting SYS_EXIT with ADP_Stopped_RunTimeErrorUnknown */
    register uint32_t op __asm__("r0") = 0x18;
    register uint32_t arg __asm__("r1") = 0x20023;
    __asm__ volatile("bkpt 0xab" : : "r"(op), "r"(arg) : "memory");
    for (;;) {
    }
}

void amc_reset(void)
{
    uint32_t *src = &__data_load, *dst = &__data_start;
    while (dst < &__data_end) *dst++ = *src++;
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;   /* CPACR: full access to CP10/CP11 */
    __asm__ volatile("dsb\n isb");
    _start();
    for (;;) {
    }
}
