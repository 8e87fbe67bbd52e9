"""Write the offline sample data: ``python data/sample/build.py`` (from the repo root).

The project writes its own small data, in exactly the schemas of the real sources, so the
default ``dvc repro`` runs without the Hugging Face hub:

- ``codegen_deep.jsonl``: Deep-style rows, 4 problems x 3 distinct solutions (the
  CodeGen-Deep-5K shape: few problems, several solutions each);
- ``codegen_diverse.jsonl``: Diverse-style rows, 12 problems x 1 solution;
- ``livecodebench_sample.jsonl``: 16 rows in LiveCodeBench ``code_generation_lite``
  format — 8 easy, 4 medium and 2 hard AtCoder-style stdin problems plus 2 LeetCode-style
  functional problems; half the rows carry private tests as plain JSON and half in the
  compressed base64(zlib(pickle(json))) form the real release uses.

Every expected output is computed here by running the problem's reference solution, so a
test's answer can never disagree with the code that claims to solve it; every training
solution must reproduce its problem's example outputs or the build stops.
tests/test_sample_data.py re-checks all of it through the project's own sandbox.
"""

from __future__ import annotations

import base64
import hashlib
import json
import pickle
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent


def dedent(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


# --------------------------------------------------------------------------------------
# Training problems (Codeforces-style statements, as in OpenCodeReasoning)
#
# Each: name, difficulty, statement (without examples), example inputs, and solutions as
# (reasoning, code). Deep problems have three solutions with different ideas.

DEEP = [
    {
        "name": "Even Pair Sums",
        "difficulty": "EASY",
        "statement": """
            Vasya wrote n integers on a board. He wants to know how many pairs of positions
            (i, j) with i < j have an even sum a_i + a_j.

            Input

            The first line contains one integer n (1 <= n <= 2000). The second line contains n
            integers a_1, ..., a_n (0 <= a_i <= 10^9).

            Output

            Print the number of pairs whose sum is even.
        """,
        "examples": ["4\n1 2 3 4\n", "5\n2 4 6 1 3\n"],
        "solutions": [
            ("""
                A sum of two integers is even exactly when both are even or both are odd. So I only
                need how many numbers are even (e) and how many are odd (o). Pairs of evens number
                e*(e-1)/2 and pairs of odds o*(o-1)/2; their total is the answer. Check on the
                first example: 1 2 3 4 has e=2, o=2, giving 1 + 1 = 2 pairs, which is right.
                This is O(n) and needs no pair loop at all.
            """, """
                n = int(input())
                a = list(map(int, input().split()))
                even = sum(1 for x in a if x % 2 == 0)
                odd = n - even
                print(even * (even - 1) // 2 + odd * (odd - 1) // 2)
            """),
            ("""
                With n at most 2000 there are about two million pairs, few enough to check each one
                directly. I loop over i, then over j > i, and count the pairs where (a_i + a_j) % 2
                is 0. For 2 4 6 1 3 the even pairs are the three among 2, 4, 6 and the one pair
                1, 3, so four in total, matching the expected output.
            """, """
                n = int(input())
                a = list(map(int, input().split()))
                count = 0
                for i in range(n):
                    for j in range(i + 1, n):
                        if (a[i] + a[j]) % 2 == 0:
                            count += 1
                print(count)
            """),
            ("""
                Group the numbers by parity while scanning left to right. When I reach a number,
                every earlier number with the same parity forms an even-sum pair with it, so I add
                the count seen so far for its parity and then increase that count. One pass, and
                each pair is counted once, at its right end.
            """, """
                input()
                seen = [0, 0]
                pairs = 0
                for x in map(int, input().split()):
                    pairs += seen[x % 2]
                    seen[x % 2] += 1
                print(pairs)
            """),
        ],
    },
    {
        "name": "Words Backwards",
        "difficulty": "EASY",
        "statement": """
            Petya received a message written as a single line of words separated by single
            spaces. Print the words of the message in reverse order, keeping each word as it is.

            Input

            One line with between 1 and 100 words. Each word consists of 1 to 20 lowercase
            Latin letters.

            Output

            Print the words in reverse order, separated by single spaces.
        """,
        "examples": ["hello brave new world\n", "single\n"],
        "solutions": [
            ("""
                The words are separated by spaces, so split the line into a list, reverse the list
                and join it back with single spaces. A line with one word stays the same, which the
                second example confirms.
            """, """
                words = input().split()
                print(" ".join(reversed(words)))
            """),
            ("""
                I can build the answer without a list reversal: walk over the words from the last
                index down to the first and collect them. Then print them joined by spaces. For
                "hello brave new world" the walk visits world, new, brave, hello.
            """, """
                words = input().split()
                result = []
                for i in range(len(words) - 1, -1, -1):
                    result.append(words[i])
                print(" ".join(result))
            """),
            ("""
                A stack reverses order naturally: push every word in reading order, then pop them
                all; they come out last word first. Printing the popped words separated by spaces
                gives the message backwards.
            """, """
                stack = []
                for word in input().split():
                    stack.append(word)
                out = []
                while stack:
                    out.append(stack.pop())
                print(" ".join(out))
            """),
        ],
    },
    {
        "name": "Best Segment",
        "difficulty": "MEDIUM",
        "statement": """
            A shop recorded its profit for n consecutive days; a loss is a negative number. Find
            the largest total profit over a non-empty segment of consecutive days.

            Input

            The first line contains n (1 <= n <= 10^5). The second line contains n integers
            p_1, ..., p_n (-10^4 <= p_i <= 10^4).

            Output

            Print the maximum sum of a non-empty contiguous segment.
        """,
        "examples": ["5\n-2 3 -1 4 -5\n", "3\n-3 -1 -2\n"],
        "solutions": [
            ("""
                This is the classic maximum subarray problem, solved by Kadane's algorithm. Keep the
                best sum of a segment that ends at the current day: it is either the current value
                alone or the current value added to the best segment ending yesterday. The answer is
                the largest of these. For -2 3 -1 4 -5 the running values are -2, 3, 2, 6, 1, so 6.
                Starting from the first element (not from 0) handles the all-negative case: -3 -1 -2
                gives -1.
            """, """
                n = int(input())
                p = list(map(int, input().split()))
                best = current = p[0]
                for x in p[1:]:
                    current = max(x, current + x)
                    best = max(best, current)
                print(best)
            """),
            ("""
                A segment sum is a difference of prefix sums: S[r] - S[l] with l < r. For each r the
                best choice of l is the smallest prefix sum seen before r. So I scan the prefix sums,
                keep the minimum so far, and update the answer with S[r] minus that minimum. The
                segment must be non-empty, which is why the minimum is taken over earlier prefixes
                only.
            """, """
                n = int(input())
                p = list(map(int, input().split()))
                prefix = 0
                lowest = 0
                best = None
                for x in p:
                    prefix += x
                    candidate = prefix - lowest
                    if best is None or candidate > best:
                        best = candidate
                    lowest = min(lowest, prefix)
                print(best)
            """),
            ("""
                Let dp[i] be the maximum sum of a segment ending exactly at day i. Then
                dp[0] = p[0] and dp[i] = p[i] + max(dp[i-1], 0), because a negative tail only hurts.
                The answer is max(dp). Filling the array is linear, and it makes the recurrence easy
                to check by hand on the examples.
            """, """
                n = int(input())
                p = list(map(int, input().split()))
                dp = [0] * n
                dp[0] = p[0]
                for i in range(1, n):
                    dp[i] = p[i] + max(dp[i - 1], 0)
                print(max(dp))
            """),
        ],
    },
    {
        "name": "Bracket Check",
        "difficulty": "MEDIUM",
        "statement": """
            A string made of the characters ( ) [ ] { } is called correct if every opening
            bracket is closed by a bracket of the same type in the right order. Decide whether
            the given string is correct.

            Input

            One line with a non-empty string of at most 10^4 bracket characters.

            Output

            Print YES if the string is correct and NO otherwise.
        """,
        "examples": ["([]{})\n", "([)]\n", "((\n"],
        "solutions": [
            ("""
                Use a stack of opening brackets. On an opening bracket push it; on a closing bracket
                the top of the stack must be its matching opener, otherwise the string is wrong.
                At the end the stack must be empty, or some bracket was never closed. "([)]" fails
                when ")" meets "[" on top; "((" fails because two openers remain.
            """, """
                s = input().strip()
                pairs = {")": "(", "]": "[", "}": "{"}
                stack = []
                ok = True
                for ch in s:
                    if ch in "([{":
                        stack.append(ch)
                    elif not stack or stack.pop() != pairs[ch]:
                        ok = False
                        break
                print("YES" if ok and not stack else "NO")
            """),
            ("""
                A correct non-empty string always contains an adjacent matched pair "()", "[]" or
                "{}". Removing such a pair keeps a correct string correct and an incorrect one
                incorrect. So I keep deleting adjacent pairs until none is left; the string was
                correct exactly when nothing remains. The length is small, so repeated replacement
                is fast enough.
            """, """
                s = input().strip()
                while True:
                    shorter = s.replace("()", "").replace("[]", "").replace("{}", "")
                    if shorter == s:
                        break
                    s = shorter
                print("YES" if s == "" else "NO")
            """),
            ("""
                Scan once and keep the stack of expected closing brackets instead of the openers:
                when I see "(" I push ")", and so on. A closing bracket must then equal the top of
                the stack exactly. This avoids a lookup table at the closing side and returns NO as
                soon as a mismatch appears.
            """, """
                def correct(s):
                    expected = []
                    closing = {"(": ")", "[": "]", "{": "}"}
                    for ch in s:
                        if ch in closing:
                            expected.append(closing[ch])
                        elif not expected or expected.pop() != ch:
                            return False
                    return not expected

                print("YES" if correct(input().strip()) else "NO")
            """),
        ],
    },
]

DIVERSE = [
    {
        "name": "Digit Sum", "difficulty": "EASY",
        "statement": """
            Given a positive integer n, print the sum of its decimal digits.

            Input

            One integer n (1 <= n <= 10^18).

            Output

            Print the digit sum of n.
        """,
        "examples": ["12345\n", "9\n"],
        "solutions": [("""
            Reading n as a string lets me visit every digit directly, with no division loop and no
            trouble with large values. Convert each character back to an integer and add them up:
            1+2+3+4+5 = 15 for the first example.
        """, """
            print(sum(int(d) for d in input().strip()))
        """)],
    },
    {
        "name": "Vowel Counter", "difficulty": "EASY",
        "statement": """
            Count how many vowels (a, e, i, o, u) appear in a word.

            Input

            One line with a word of 1 to 100 lowercase Latin letters.

            Output

            Print the number of vowels in the word.
        """,
        "examples": ["programming\n", "rhythm\n"],
        "solutions": [("""
            Go through the letters and count those that belong to the set of vowels. "programming"
            has o, a, i, so 3; "rhythm" has none, so 0 (y is not a vowel here).
        """, """
            word = input().strip()
            print(sum(1 for ch in word if ch in "aeiou"))
        """)],
    },
    {
        "name": "Common Divisor", "difficulty": "EASY",
        "statement": """
            Find the greatest common divisor of n positive integers.

            Input

            The first line contains n (1 <= n <= 10^5). The second line contains the n integers,
            each between 1 and 10^9.

            Output

            Print their greatest common divisor.
        """,
        "examples": ["3\n12 18 24\n", "2\n7 13\n"],
        "solutions": [("""
            The gcd of a list is obtained by folding the pairwise gcd over it: gcd(a, b, c) =
            gcd(gcd(a, b), c). Python's math.gcd does each step by Euclid's algorithm. For 12 18 24
            the fold gives gcd(12,18)=6 and gcd(6,24)=6.
        """, """
            import math
            from functools import reduce

            input()
            print(reduce(math.gcd, map(int, input().split())))
        """)],
    },
    {
        "name": "Runner-Up", "difficulty": "EASY",
        "statement": """
            Given n scores, print the second largest distinct score, or -1 if all scores are equal.

            Input

            The first line contains n (1 <= n <= 1000); the second line contains n integers
            between -1000 and 1000.

            Output

            Print the second largest distinct value, or -1 when it does not exist.
        """,
        "examples": ["5\n2 3 6 6 5\n", "3\n4 4 4\n"],
        "solutions": [("""
            Duplicates do not matter, so I first take the set of distinct scores. If it has fewer
            than two elements there is no runner-up and the answer is -1. Otherwise sort the
            distinct values and take the second from the end: for 2 3 6 6 5 the distinct sorted
            values are 2 3 5 6, so the answer is 5.
        """, """
            input()
            values = sorted(set(map(int, input().split())))
            print(values[-2] if len(values) >= 2 else -1)
        """)],
    },
    {
        "name": "Fibonacci Modulo", "difficulty": "EASY",
        "statement": """
            The Fibonacci numbers are F_0 = 0, F_1 = 1 and F_k = F_(k-1) + F_(k-2). Print F_n
            modulo 1000000007.

            Input

            One integer n (0 <= n <= 10^5).

            Output

            Print F_n mod 1000000007.
        """,
        "examples": ["10\n", "0\n"],
        "solutions": [("""
            n is at most 10^5, so iterating the recurrence is enough. Keep the pair (F_k, F_(k+1))
            and advance it n times, reducing modulo 1000000007 at every step so the numbers stay
            small. Starting from (0, 1), ten steps give F_10 = 55.
        """, """
            MOD = 10**9 + 7
            n = int(input())
            a, b = 0, 1
            for _ in range(n):
                a, b = b, (a + b) % MOD
            print(a)
        """)],
    },
    {
        "name": "Prime Tally", "difficulty": "MEDIUM",
        "statement": """
            Count the prime numbers that do not exceed n.

            Input

            One integer n (1 <= n <= 10^6).

            Output

            Print how many primes p satisfy p <= n.
        """,
        "examples": ["10\n", "1\n"],
        "solutions": [("""
            Testing each number by trial division would be slow near 10^6, so use the sieve of
            Eratosthenes: mark every multiple of each prime starting from its square as composite,
            then count the unmarked numbers from 2 to n. Up to 10 the primes are 2, 3, 5, 7, so 4.
            For n = 1 there are none.
        """, """
            n = int(input())
            if n < 2:
                print(0)
            else:
                is_prime = bytearray([1]) * (n + 1)
                is_prime[0] = is_prime[1] = 0
                i = 2
                while i * i <= n:
                    if is_prime[i]:
                        is_prime[i * i::i] = bytearray(len(range(i * i, n + 1, i)))
                    i += 1
                print(sum(is_prime))
        """)],
    },
    {
        "name": "Compress Letters", "difficulty": "EASY",
        "statement": """
            Compress a string by replacing every maximal block of equal letters with the letter
            followed by the block length.

            Input

            One line with a string of 1 to 1000 lowercase letters.

            Output

            Print the compressed string.
        """,
        "examples": ["aaabccdddd\n", "xyz\n"],
        "solutions": [("""
            Walk through the string while tracking the current letter and how many times it has
            repeated. When the letter changes, emit the previous letter and its count, then start
            a new block. Do not forget to emit the last block after the loop. "aaabccdddd" becomes
            a3b1c2d4.
        """, """
            s = input().strip()
            parts = []
            current, count = s[0], 1
            for ch in s[1:]:
                if ch == current:
                    count += 1
                else:
                    parts.append(f"{current}{count}")
                    current, count = ch, 1
            parts.append(f"{current}{count}")
            print("".join(parts))
        """)],
    },
    {
        "name": "Coin Change Greedy", "difficulty": "EASY",
        "statement": """
            A cashier has unlimited coins of values 1, 5, 10 and 25. Find the minimum number of
            coins that add up to exactly m.

            Input

            One integer m (0 <= m <= 10^9).

            Output

            Print the minimum number of coins.
        """,
        "examples": ["63\n", "0\n"],
        "solutions": [("""
            For the coin system 1, 5, 10, 25 the greedy choice is optimal: always take as many of
            the largest coin as fit, then move to the next. With integer division this is four
            steps. 63 = 2*25 + 1*10 + 0*5 + 3*1, so 6 coins.
        """, """
            m = int(input())
            coins = 0
            for value in (25, 10, 5, 1):
                coins += m // value
                m %= value
            print(coins)
        """)],
    },
    {
        "name": "Flip The Table", "difficulty": "EASY",
        "statement": """
            Print the transpose of an r by c table of integers.

            Input

            The first line contains r and c (1 <= r, c <= 100). Each of the next r lines holds c
            integers.

            Output

            Print c lines with r integers each: the table transposed.
        """,
        "examples": ["2 3\n1 2 3\n4 5 6\n", "1 1\n7\n"],
        "solutions": [("""
            Read the rows into a list of lists. The transposed table's i-th row is the i-th column
            of the original, which zip(*rows) produces directly. Print each resulting tuple with
            its numbers separated by spaces.
        """, """
            r, c = map(int, input().split())
            rows = [input().split() for _ in range(r)]
            for column in zip(*rows):
                print(" ".join(column))
        """)],
    },
    {
        "name": "Longest Climb", "difficulty": "EASY",
        "statement": """
            A hiker wrote down the heights of n consecutive points of a trail. Find the length of
            the longest stretch of consecutive points where every height is strictly greater than
            the one before it.

            Input

            The first line contains n (1 <= n <= 10^5); the second line contains n heights.

            Output

            Print the length of the longest strictly increasing stretch.
        """,
        "examples": ["6\n1 2 2 3 4 5\n", "3\n5 4 3\n"],
        "solutions": [("""
            Scan once, keeping the length of the increasing stretch that ends at the current point:
            it grows by one when the height rises and resets to 1 otherwise. The answer is the
            largest length seen. In 1 2 2 3 4 5 the stretch 2 3 4 5 has length 4.
        """, """
            n = int(input())
            h = list(map(int, input().split()))
            best = run = 1
            for i in range(1, n):
                run = run + 1 if h[i] > h[i - 1] else 1
                best = max(best, run)
            print(best)
        """)],
    },
    {
        "name": "Letter Shuffle", "difficulty": "EASY",
        "statement": """
            Two words are anagrams if one can be obtained from the other by rearranging letters.
            Decide whether the two given words are anagrams.

            Input

            Two lines, each with a word of 1 to 100 lowercase letters.

            Output

            Print YES if they are anagrams and NO otherwise.
        """,
        "examples": ["listen\nsilent\n", "abc\nabd\n"],
        "solutions": [("""
            Two words are anagrams exactly when they contain the same letters with the same
            multiplicities, which is the same as having equal sorted letter sequences. Sorting
            both and comparing settles it: listen and silent both sort to eilnst.
        """, """
            a = input().strip()
            b = input().strip()
            print("YES" if sorted(a) == sorted(b) else "NO")
        """)],
    },
    {
        "name": "Bit Population", "difficulty": "EASY",
        "statement": """
            For each of q queries, print how many ones the binary representation of the given
            number has.

            Input

            The first line contains q (1 <= q <= 10^4). Each of the next q lines contains an
            integer x (0 <= x <= 10^18).

            Output

            For each query print the number of set bits of x on its own line.
        """,
        "examples": ["3\n5\n8\n0\n", "1\n1023\n"],
        "solutions": [("""
            The binary form of x is bin(x); counting the character "1" in it gives the number of
            set bits. Reading all queries at once with sys.stdin is faster than calling input() q
            times. 5 is 101 (two ones), 8 is 1000 (one), 0 has none.
        """, """
            import sys

            data = sys.stdin.read().split()
            q = int(data[0])
            print("\\n".join(str(bin(int(x)).count("1")) for x in data[1:1 + q]))
        """)],
    },
]


# --------------------------------------------------------------------------------------
# Evaluation problems (AtCoder-style stdin, LeetCode-style functional), LiveCodeBench rows
#
# Each: question_id, title, platform, difficulty, contest_date, statement (without samples),
# reference solution, test inputs (the first ``public`` are public, shown as samples).
# Functional problems add starter_code and func_name; their inputs are one JSON value per
# line, one line per argument, as in LiveCodeBench.

ATCODER_FORMAT = "The input is given from Standard Input in the following format:"

EVAL = [
    {
        "question_id": "sample_abc001_a", "title": "Fence Around a Field", "difficulty": "easy",
        "contest_date": "2024-09-07T00:00:00",
        "statement": f"""
            A rectangular field is H meters tall and W meters wide. Print its area and the length of
            fence needed to surround it, separated by a space.

            Constraints

            - 1 \\leq H, W \\leq 1000
            - All input values are integers.

            Input

            {ATCODER_FORMAT}
            H W

            Output

            Print the area and the perimeter, in this order, separated by a space.
        """,
        "reference": """
            h, w = map(int, input().split())
            print(h * w, 2 * (h + w))
        """,
        "inputs": ["3 5\n", "1 1\n", "1000 999\n", "7 2\n", "10 10\n"], "public": 2,
    },
    {
        "question_id": "sample_abc002_a", "title": "How Many a", "difficulty": "easy",
        "contest_date": "2024-09-14T00:00:00",
        "statement": f"""
            You are given a string S of lowercase English letters. Print how many times the letter
            a occurs in S.

            Constraints

            - S is a string of length between 1 and 100 consisting of lowercase English letters.

            Input

            {ATCODER_FORMAT}
            S

            Output

            Print the number of occurrences of a.
        """,
        "reference": """
            print(input().strip().count("a"))
        """,
        "inputs": ["banana\n", "xyz\n", "a\n", "abracadabra\n", "aaaaaaaaaa\n"], "public": 2,
    },
    {
        "question_id": "sample_abc003_a", "title": "Tallest Tower", "difficulty": "easy",
        "contest_date": "2024-09-21T00:00:00",
        "statement": f"""
            Three towers have heights A, B and C. Print the height of the tallest one.

            Constraints

            - 1 \\leq A, B, C \\leq 100
            - All input values are integers.

            Input

            {ATCODER_FORMAT}
            A B C

            Output

            Print the maximum of A, B and C.
        """,
        "reference": """
            print(max(map(int, input().split())))
        """,
        "inputs": ["3 9 4\n", "5 5 5\n", "100 1 2\n", "1 2 100\n", "8 80 79\n"], "public": 2,
    },
    {
        "question_id": "sample_abc004_a", "title": "Case Swap", "difficulty": "easy",
        "contest_date": "2024-09-28T00:00:00",
        "statement": f"""
            You are given a string S of English letters. Print the string obtained by turning every
            uppercase letter of S into lowercase and every lowercase letter into uppercase.

            Constraints

            - S is a string of length between 1 and 100 consisting of uppercase and lowercase
              English letters.

            Input

            {ATCODER_FORMAT}
            S

            Output

            Print the converted string.
        """,
        "reference": """
            print(input().strip().swapcase())
        """,
        "inputs": ["AtCoder\n", "abc\n", "XYZ\n", "aBcDeF\n", "Q\n"], "public": 2,
    },
    {
        "question_id": "sample_abc005_b", "title": "Multiples of Three or Five", "difficulty": "easy",
        "contest_date": "2024-10-05T00:00:00",
        "statement": f"""
            Print the sum of all integers between 1 and N (inclusive) that are multiples of 3 or of 5.

            Constraints

            - 1 \\leq N \\leq 10^6
            - N is an integer.

            Input

            {ATCODER_FORMAT}
            N

            Output

            Print the sum.
        """,
        "reference": """
            n = int(input())
            print(sum(k for k in range(1, n + 1) if k % 3 == 0 or k % 5 == 0))
        """,
        "inputs": ["10\n", "1\n", "15\n", "1000\n", "1000000\n"], "public": 2,
    },
    {
        "question_id": "sample_abc006_b", "title": "Digital Clock", "difficulty": "easy",
        "contest_date": "2024-10-12T00:00:00",
        "statement": f"""
            M minutes have passed since midnight. Print the time shown by a 24-hour digital clock in
            the format HH:MM, where both parts have exactly two digits.

            Constraints

            - 0 \\leq M \\leq 1439
            - M is an integer.

            Input

            {ATCODER_FORMAT}
            M

            Output

            Print the time as HH:MM.
        """,
        "reference": """
            m = int(input())
            print(f"{m // 60:02d}:{m % 60:02d}")
        """,
        "inputs": ["75\n", "0\n", "1439\n", "600\n", "61\n"], "public": 2,
    },
    {
        "question_id": "sample_abc007_b", "title": "Kinds of Cards", "difficulty": "easy",
        "contest_date": "2024-10-19T00:00:00",
        "statement": f"""
            Takahashi has N cards; the i-th card has the integer A_i written on it. How many different
            integers are written on the cards?

            Constraints

            - 1 \\leq N \\leq 2 \\times 10^5
            - 1 \\leq A_i \\leq 10^9
            - All input values are integers.

            Input

            {ATCODER_FORMAT}
            N
            A_1 A_2 \\ldots A_N

            Output

            Print the number of distinct values among A_1, \\ldots, A_N.
        """,
        "reference": """
            input()
            print(len(set(input().split())))
        """,
        "inputs": ["5\n3 1 4 1 5\n", "3\n7 7 7\n", "1\n1000000000\n", "6\n1 2 3 4 5 6\n",
                   "8\n2 2 3 3 2 2 3 9\n"], "public": 2,
    },
    {
        "question_id": "sample_abc008_b", "title": "Staircase Drawing", "difficulty": "easy",
        "contest_date": "2024-10-26T00:00:00",
        "statement": f"""
            Given a positive integer N, print N lines. The i-th line (1 \\leq i \\leq N) must consist
            of exactly i copies of the character #.

            Constraints

            - 1 \\leq N \\leq 50
            - N is an integer.

            Input

            {ATCODER_FORMAT}
            N

            Output

            Print the N lines.
        """,
        "reference": """
            n = int(input())
            for i in range(1, n + 1):
                print("#" * i)
        """,
        "inputs": ["3\n", "1\n", "5\n", "10\n", "50\n"], "public": 2,
    },
    {
        "question_id": "sample_abc009_c", "title": "Pairs Adding Up", "difficulty": "medium",
        "contest_date": "2024-11-02T00:00:00",
        "statement": f"""
            You are given N integers A_1, \\ldots, A_N and an integer K. Count the pairs of indices
            (i, j) with 1 \\leq i < j \\leq N such that A_i + A_j = K.

            Constraints

            - 2 \\leq N \\leq 2 \\times 10^5
            - -10^9 \\leq A_i, K \\leq 10^9
            - All input values are integers.

            Input

            {ATCODER_FORMAT}
            N K
            A_1 A_2 \\ldots A_N

            Output

            Print the number of such pairs.
        """,
        "reference": """
            from collections import Counter

            n, k = map(int, input().split())
            seen = Counter()
            pairs = 0
            for x in map(int, input().split()):
                pairs += seen[k - x]
                seen[x] += 1
            print(pairs)
        """,
        "inputs": ["5 6\n1 5 3 3 2\n", "4 2\n1 1 1 1\n", "3 0\n-4 4 0\n", "6 10\n5 5 5 5 5 5\n",
                   "2 7\n3 3\n"], "public": 2,
    },
    {
        "question_id": "sample_abc010_c", "title": "Paths Around Rocks", "difficulty": "medium",
        "contest_date": "2024-11-09T00:00:00",
        "statement": f"""
            There is a grid with H rows and W columns. The square at the i-th row and j-th column is
            empty if S_{{i,j}} is . and contains a rock if it is #. Starting from the top-left square
            and moving only right or down through empty squares, in how many ways can you reach the
            bottom-right square? Print the count modulo 998244353.

            Constraints

            - 1 \\leq H, W \\leq 1000
            - S_{{i,j}} is . or #.
            - The top-left and bottom-right squares are empty.

            Input

            {ATCODER_FORMAT}
            H W
            S_1
            \\vdots
            S_H

            Output

            Print the number of paths modulo 998244353.
        """,
        "reference": """
            MOD = 998244353
            h, w = map(int, input().split())
            grid = [input().strip() for _ in range(h)]
            ways = [0] * w
            ways[0] = 1
            for i in range(h):
                for j in range(w):
                    if grid[i][j] == "#":
                        ways[j] = 0
                    elif j > 0:
                        ways[j] = (ways[j] + ways[j - 1]) % MOD
            print(ways[w - 1])
        """,
        "inputs": ["3 3\n...\n.#.\n...\n", "2 2\n.#\n#.\n", "1 5\n.....\n", "3 4\n....\n....\n....\n",
                   "4 4\n..#.\n#...\n.#..\n....\n"], "public": 2,
    },
    {
        "question_id": "sample_abc011_c", "title": "Escape the Maze", "difficulty": "medium",
        "contest_date": "2024-11-16T00:00:00",
        "statement": f"""
            A maze is a grid of H rows and W columns of characters: S is the start, G the goal, .
            an open square and # a wall. In one move you go to an open square (or G) adjacent
            vertically or horizontally. Print the minimum number of moves from S to G, or -1 if G
            cannot be reached.

            Constraints

            - 1 \\leq H, W \\leq 500
            - S and G each appear exactly once.

            Input

            {ATCODER_FORMAT}
            H W
            C_1
            \\vdots
            C_H

            Output

            Print the minimum number of moves, or -1.
        """,
        "reference": """
            from collections import deque

            h, w = map(int, input().split())
            grid = [input().strip() for _ in range(h)]
            start = next((i, j) for i in range(h) for j in range(w) if grid[i][j] == "S")
            dist = {start: 0}
            queue = deque([start])
            answer = -1
            while queue:
                i, j = queue.popleft()
                if grid[i][j] == "G":
                    answer = dist[(i, j)]
                    break
                for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                    ni, nj = i + di, j + dj
                    if 0 <= ni < h and 0 <= nj < w and grid[ni][nj] != "#" and (ni, nj) not in dist:
                        dist[(ni, nj)] = dist[(i, j)] + 1
                        queue.append((ni, nj))
            print(answer)
        """,
        "inputs": ["3 4\nS..#\n.#..\n...G\n", "2 3\nS#G\n.#.\n", "1 2\nSG\n",
                   "4 5\nS....\n####.\n.....\nG####\n", "3 3\nS..\n###\n..G\n"], "public": 2,
    },
    {
        "question_id": "sample_abc012_d", "title": "Painted Length", "difficulty": "medium",
        "contest_date": "2024-11-23T00:00:00",
        "statement": f"""
            N painters each painted one segment of a long wall: painter i painted from coordinate L_i
            to coordinate R_i. Print the total length of wall that is painted at least once.

            Constraints

            - 1 \\leq N \\leq 2 \\times 10^5
            - 0 \\leq L_i < R_i \\leq 10^9
            - All input values are integers.

            Input

            {ATCODER_FORMAT}
            N
            L_1 R_1
            \\vdots
            L_N R_N

            Output

            Print the painted length.
        """,
        "reference": """
            import sys

            data = sys.stdin.read().split()
            n = int(data[0])
            segments = sorted((int(data[1 + 2 * i]), int(data[2 + 2 * i])) for i in range(n))
            total = 0
            cur_l, cur_r = segments[0]
            for l, r in segments[1:]:
                if l > cur_r:
                    total += cur_r - cur_l
                    cur_l, cur_r = l, r
                else:
                    cur_r = max(cur_r, r)
            total += cur_r - cur_l
            print(total)
        """,
        "inputs": ["3\n0 4\n2 6\n8 9\n", "1\n5 10\n", "2\n0 10\n2 3\n", "3\n0 1\n1 2\n2 3\n",
                   "4\n10 20\n0 5\n4 11\n30 31\n"], "public": 2,
    },
    {
        "question_id": "sample_abc013_f", "title": "Common Thread", "difficulty": "hard",
        "contest_date": "2024-11-30T00:00:00",
        "statement": f"""
            Given two strings S and T of lowercase letters, print the length of their longest common
            subsequence.

            Constraints

            - 1 \\leq |S|, |T| \\leq 3000

            Input

            {ATCODER_FORMAT}
            S
            T

            Output

            Print the length of a longest common subsequence.
        """,
        "reference": """
            s = input().strip()
            t = input().strip()
            prev = [0] * (len(t) + 1)
            for a in s:
                cur = [0]
                for j, b in enumerate(t):
                    cur.append(prev[j] + 1 if a == b else max(prev[j + 1], cur[j]))
                prev = cur
            print(prev[-1])
        """,
        "inputs": ["axyb\nabyxb\n", "abc\ndef\n", "aaaa\naa\n", "abcde\nace\n"], "public": 2,
    },
    {
        "question_id": "sample_abc014_g", "title": "Inversion Count", "difficulty": "hard",
        "contest_date": "2024-12-07T00:00:00",
        "statement": f"""
            Given a permutation P of 1, \\ldots, N, print the number of pairs (i, j) with i < j and
            P_i > P_j.

            Constraints

            - 1 \\leq N \\leq 2 \\times 10^5

            Input

            {ATCODER_FORMAT}
            N
            P_1 \\ldots P_N

            Output

            Print the number of inversions.
        """,
        "reference": """
            n = int(input())
            p = list(map(int, input().split()))
            tree = [0] * (n + 1)
            inversions = 0
            for seen, x in enumerate(p):
                smaller_or_equal = 0
                i = x
                while i > 0:
                    smaller_or_equal += tree[i]
                    i -= i & -i
                inversions += seen - smaller_or_equal
                i = x
                while i <= n:
                    tree[i] += 1
                    i += i & -i
            print(inversions)
        """,
        "inputs": ["3\n3 1 2\n", "1\n1\n", "4\n4 3 2 1\n", "5\n1 2 3 4 5\n"], "public": 2,
    },
    {
        "question_id": "sample_lc1001", "title": "best-time-to-sell", "difficulty": "easy",
        "platform": "leetcode", "contest_date": "2024-09-08T00:00:00",
        "statement": """
            You are given an array prices where prices[i] is the price of a stock on day i. Choose one
            day to buy and a later day to sell. Return the maximum profit, or 0 if no profit is
            possible.

            Constraints:

            1 <= prices.length <= 10^5
            0 <= prices[i] <= 10^4
        """,
        "starter_code": "class Solution:\n    def maxProfit(self, prices: List[int]) -> int:\n        ",
        "func_name": "maxProfit",
        "reference": """
            class Solution:
                def maxProfit(self, prices):
                    lowest, best = float("inf"), 0
                    for p in prices:
                        lowest = min(lowest, p)
                        best = max(best, p - lowest)
                    return best
        """,
        "inputs": ["[7, 1, 5, 3, 6, 4]", "[7, 6, 4, 3, 1]", "[2]", "[1, 2, 3, 4, 5]"], "public": 2,
    },
    {
        "question_id": "sample_lc1002", "title": "missing-number", "difficulty": "easy",
        "platform": "leetcode", "contest_date": "2024-09-15T00:00:00",
        "statement": """
            Given an array nums containing n distinct numbers taken from the range [0, n], return the
            only number in the range that is missing from the array.

            Constraints:

            1 <= n <= 10^4
            All the numbers of nums are unique.
        """,
        "starter_code": "class Solution:\n    def missingNumber(self, nums: List[int]) -> int:\n        ",
        "func_name": "missingNumber",
        "reference": """
            class Solution:
                def missingNumber(self, nums):
                    n = len(nums)
                    return n * (n + 1) // 2 - sum(nums)
        """,
        "inputs": ["[3, 0, 1]", "[0, 1]", "[9, 6, 4, 2, 3, 5, 7, 0, 1]", "[0]"], "public": 2,
    },
]


# --------------------------------------------------------------------------------------
# Building


def run_stdin(code: str, stdin: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], input=stdin, capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout


def run_functional(code: str, func_name: str, test_input: str):
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - the project's own reference solutions, written above
    args = [json.loads(line) for line in test_input.split("\n")]
    return getattr(namespace["Solution"](), func_name)(*args)


def statement_with_examples(statement: str, examples: list[tuple[str, str]]) -> str:
    parts = [dedent(statement), "", "Examples"]
    for given, expected in examples:
        parts += ["", "Input", "", given.rstrip("\n"), "", "Output", "", expected.rstrip("\n")]
    return "\n".join(parts) + "\n"


def codegen_rows(problems: list[dict], first_unique_id: int) -> list[dict]:
    rows = []
    for problem in problems:
        solutions = [(dedent(reasoning).replace("\n", " "), dedent(code)) for reasoning, code in problem["solutions"]]
        expected = [run_stdin(solutions[0][1], given) for given in problem["examples"]]
        for reasoning, code in solutions[1:]:
            got = [run_stdin(code, given) for given in problem["examples"]]
            if got != expected:
                raise SystemExit(f"{problem['name']}: solutions disagree on the examples: {got} vs {expected}")
        statement = statement_with_examples(problem["statement"], list(zip(problem["examples"], expected)))
        problem_id = hashlib.md5(statement.encode()).hexdigest()
        for reasoning, code in solutions:
            rows.append({
                "unique_id": first_unique_id + len(rows),
                "id": problem_id,
                "input": statement,
                "output": f"{reasoning}\n\n```python\n{code}\n```",
                "solution": code,
                "source": "codeforces",
                "license": "cc-by-4.0",
                "dataset": "code_contests",
                "split": "train",
                "difficulty": problem["difficulty"],
            })
    return rows


def compress_tests(tests: list[dict]) -> str:
    """LiveCodeBench's private-test encoding: base64(zlib(pickle(json string)))."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode("ascii")


def livecodebench_row(problem: dict, compressed: bool) -> dict:
    code = dedent(problem["reference"])
    func_name = problem.get("func_name")
    tests = []
    for given in problem["inputs"]:
        if func_name:
            tests.append({"input": given, "output": json.dumps(run_functional(code, func_name, given)),
                          "testtype": "functional"})
        else:
            tests.append({"input": given, "output": run_stdin(code, given), "testtype": "stdin"})
    public, private = tests[:problem["public"]], tests[problem["public"]:]
    content = dedent(problem["statement"])
    if not func_name:
        for number, test in enumerate(public, start=1):
            content += (f"\n\nSample Input {number}\n\n{test['input'].rstrip()}"
                        f"\n\nSample Output {number}\n\n{test['output'].rstrip()}")
    else:
        for number, test in enumerate(public, start=1):
            arguments = ", ".join(test["input"].split("\n"))
            content += f"\n\nExample {number}:\n\nInput: {arguments}\nOutput: {test['output']}"
    return {
        "question_title": problem["title"],
        "question_content": content + "\n",
        "platform": problem.get("platform", "atcoder"),
        "question_id": problem["question_id"],
        "contest_id": problem["question_id"].split("_")[1] if "_abc" in problem["question_id"] else "weekly-sample",
        "contest_date": problem["contest_date"],
        "starter_code": problem.get("starter_code", ""),
        "difficulty": problem["difficulty"],
        "public_test_cases": json.dumps(public),
        "private_test_cases": compress_tests(private) if compressed else json.dumps(private),
        "metadata": json.dumps({"func_name": func_name} if func_name else {}),
    }


def write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    tmp.replace(path)
    print(f"{len(rows):3d} rows -> {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")


def main() -> None:
    write_jsonl(HERE / "codegen_deep.jsonl", codegen_rows(DEEP, first_unique_id=1))
    write_jsonl(HERE / "codegen_diverse.jsonl", codegen_rows(DIVERSE, first_unique_id=101))
    write_jsonl(HERE / "livecodebench_sample.jsonl",
                [livecodebench_row(problem, compressed=index % 2 == 1) for index, problem in enumerate(EVAL)])


if __name__ == "__main__":
    main()
